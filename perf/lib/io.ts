/**
 * What a measurement cost besides time: the bytes written to storage (`/proc/<pid>/io`) and the
 * CPU time, of this process and of the server processes the harness started (redis-server), over
 * exactly the measured interval. Write amplification is `writeBytes` / payload bytes.
 *
 * `write_bytes` is the kernel's count of bytes this process caused to be written to storage: for
 * buffered writes it is charged when a page-cache page becomes dirty (whole pages: a 100 B append
 * that is fdatasync'd re-dirties its 4 KiB page and counts 4 KiB each time), for direct I/O when
 * it is submitted. Every thread counts (LevelDB's compaction thread, libuv's pool, lmdb-js's
 * writer thread), and so does the later writeback of pages this process dirtied. It leaves out
 * the filesystem's journal (ext4's jbd2 thread writes that) and the device's own work. `wchar` is
 * every byte passed to write()-like calls, whether or not it reached storage.
 */
import { readFileSync } from 'node:fs'

export interface IoCounters {
  readonly writeBytes: number
  readonly wchar: number
}

/** The counters of `/proc/<pid>/io`; undefined where the file does not exist or cannot be read (not Linux, no task I/O accounting). */
export function readIo (pid: number | 'self' = 'self'): IoCounters | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8')
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
    const counters = { writeBytes: field('write_bytes'), wchar: field('wchar') }
    return Number.isFinite(counters.writeBytes) && Number.isFinite(counters.wchar) ? counters : undefined
  } catch {
    return undefined
  }
}

/** utime + stime of a running process in µs (/proc/<pid>/stat counts USER_HZ ticks, 100 per second on Linux); 0 where unknown. */
function processCpuUs (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch {
    return 0
  }
}

/** What one measured interval cost; `undefined` fields could not be read. */
export interface Resources {
  /** CPU time (user + system) of this process, all threads, µs. */
  readonly cpuUs: number
  /** CPU time of the server processes counted as this run's (redis-server), µs (10 ms resolution). */
  readonly serverCpuUs: number
  /** `write_bytes` of this process plus those of the servers. */
  readonly writeBytes: number | undefined
  /** `wchar` of this process plus those of the servers. */
  readonly wchar: number | undefined
  /** The servers' share of `writeBytes`. */
  readonly serverWriteBytes: number | undefined
}

/** Start counting; call the result at the end of the measured interval. `servers` are the pids of server processes to count as this run's. */
export function resourceMeter (servers: readonly number[] = []): () => Resources {
  const cpu0 = process.cpuUsage()
  const own0 = readIo()
  const srv0 = servers.map(pid => ({ pid, io: readIo(pid), cpuUs: processCpuUs(pid) }))
  return () => {
    const cpu = process.cpuUsage(cpu0)
    const own1 = readIo()
    let serverWriteBytes: number | undefined = 0
    let serverWchar: number | undefined = 0
    let serverCpuUs = 0
    for (const s of srv0) {
      const io1 = readIo(s.pid)
      if (s.io === undefined || io1 === undefined) {
        serverWriteBytes = undefined
        serverWchar = undefined
      } else if (serverWriteBytes !== undefined && serverWchar !== undefined) {
        serverWriteBytes += io1.writeBytes - s.io.writeBytes
        serverWchar += io1.wchar - s.io.wchar
      }
      serverCpuUs += Math.max(0, processCpuUs(s.pid) - s.cpuUs)
    }
    const own = own0 === undefined || own1 === undefined ? undefined : { writeBytes: own1.writeBytes - own0.writeBytes, wchar: own1.wchar - own0.wchar }
    return {
      cpuUs: cpu.user + cpu.system,
      serverCpuUs,
      writeBytes: own === undefined || serverWriteBytes === undefined ? undefined : own.writeBytes + serverWriteBytes,
      wchar: own === undefined || serverWchar === undefined ? undefined : own.wchar + serverWchar,
      serverWriteBytes,
    }
  }
}
