import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { ARCHIVE_EXTENSION, ARCHIVE_MEDIA_TYPE } from '../backup/format.js'
import type { BackupBase, BackupManifest } from '../backup/manifest.js'
import type { QueueService } from './queue-service.js'

/**
 * `POST /v1/backup`: a backup of the running queue, streamed as the response body.
 *
 * Streamed rather than written to a path on the server: the operator gets the archive where the
 * request was made (`curl … -o backup.evaq`), the service needs no writable backup directory and
 * no rule about which paths a token may write to, and nothing piles up on the queue's own disk,
 * whose budget the queue is there to guard. The snapshot is taken before the first byte is sent,
 * so an error before it (a bad `since`, a closed queue) is an ordinary JSON error; one after it
 * (the service stopping, the queue's database closing) cuts the body short, and an archive cut
 * short has no summary frame, which every reader refuses.
 *
 * The body is optional: `{ "since": <manifest of an earlier archive> }` makes an incremental
 * backup (`evaq backup --url … --since FILE` sends it).
 */

const SINCE_BODY = {
  type: ['object', 'null'],
  properties: { since: { type: 'object' } },
  additionalProperties: false,
} as const

export function registerBackupRoute (app: FastifyInstance, service: QueueService): void {
  app.post<{ Body: { since?: BackupManifest | BackupBase } | null }>('/v1/backup', {
    schema: { body: SINCE_BODY },
  }, async (request, reply) => {
    const since = request.body?.since
    const backup = await service.evaq.backup(since === undefined ? {} : { since })
    const { manifest } = backup
    const body = Readable.from(backup, { objectMode: false })
    const stop = (): void => { body.destroy(); void backup.close() }
    if (service.stopSignal.aborted) stop()
    else service.stopSignal.addEventListener('abort', stop, { once: true })
    reply.raw.once('close', () => {
      service.stopSignal.removeEventListener('abort', stop)
      if (!reply.raw.writableFinished) stop()
    })
    const stamp = new Date(manifest.createdAt).toISOString().replace(/[:.]/g, '-')
    return reply
      .type(ARCHIVE_MEDIA_TYPE)
      .header('content-disposition', `attachment; filename="evaq-${stamp}-${manifest.kind}${ARCHIVE_EXTENSION}"`)
      .header('x-evaq-backup-id', manifest.id)
      .header('x-evaq-backup-kind', manifest.kind)
      .send(body)
  })
}
