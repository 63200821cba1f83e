/**
 * The Node floor for lock-step TFTP: the least a Node.js server can do per block — receive an
 * ACK, send the next DATA from memory — with nothing else (no cache, no policy, no metrics, no
 * logging). The benchmark runs it on the gateway's core and Node binary, with the same clients,
 * and prints its speed beside every lock-step figure: the gap between it and tftpd-hpa is the
 * runtime's per-datagram cost, the gap between the gateway and it is the gateway's own.
 *
 * node --import tsx bench/node-floor.ts DIR PORT  (serves the files of DIR on 127.0.0.1:PORT)
 *
 * Reads only: RRQ with blksize/tsize (windowsize is not acknowledged, so clients fall back to
 * window 1); retransmits the last packet after 1 s of silence, gives up after 10 s.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';

interface Transfer {
  readonly data: Buffer;
  readonly blksize: number;
  /** Index (from 1, not wrapped) of the last block sent; 0 while the OACK is outstanding. */
  block: number;
  last: Buffer[];
  idleSince: number;
  resends: number;
}

const [dir, portText] = process.argv.slice(2);
if (!dir || !portText) {
  process.stderr.write('usage: node-floor DIR PORT\n');
  process.exit(2);
}
const files = new Map<string, Buffer>();
const transfers = new Map<string, Transfer>();
// Sends to the literal address in the same tick (dns.lookup would defer each send a tick), as
// the gateway does (src/tftp/transport.ts).
const socket = dgram.createSocket({ type: 'udp4', lookup: ((address: string, family: number, cb: (e: null, a: string, f: number) => void) => cb(null, address, family)) as never });

const header = (opcode: number, block: number): Buffer => {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt16BE(opcode, 0);
  h.writeUInt16BE(block & 0xffff, 2);
  return h;
};

function sendBlock(t: Transfer, key: string, port: number, address: string): void {
  const start = t.block * t.blksize;
  if (start > t.data.length) {
    transfers.delete(key);
    return;
  }
  t.block++;
  t.last = [header(3, t.block), t.data.subarray(start, start + t.blksize)];
  t.idleSince = Date.now();
  t.resends = 0;
  socket.send(t.last, port, address);
}

function onRequest(msg: Buffer, key: string, port: number, address: string): void {
  const fields = msg.subarray(2).toString('latin1').split('\0');
  const name = path.basename(fields[0] ?? '');
  let data = files.get(name);
  if (!data) {
    try {
      data = fs.readFileSync(path.join(dir!, name));
      files.set(name, data);
    } catch {
      socket.send([header(5, 1), Buffer.from('not found\0')], port, address);
      return;
    }
  }
  let blksize = 512;
  const oack: string[] = [];
  for (let i = 2; i + 1 < fields.length; i += 2) {
    const option = fields[i]!.toLowerCase();
    if (option === 'blksize') {
      blksize = Math.min(65464, Math.max(8, Number(fields[i + 1])));
      oack.push('blksize', String(blksize));
    } else if (option === 'tsize') oack.push('tsize', String(data.length));
  }
  const t: Transfer = { data, blksize, block: 0, last: [], idleSince: Date.now(), resends: 0 };
  transfers.set(key, t);
  if (oack.length === 0) return sendBlock(t, key, port, address);
  t.last = [Buffer.from([0, 6]), Buffer.from(`${oack.join('\0')}\0`, 'latin1')];
  socket.send(t.last, port, address);
}

socket.on('message', (msg, from) => {
  const key = `${from.address}:${from.port}`;
  const opcode = msg.length >= 2 ? msg.readUInt16BE(0) : 0;
  if (opcode === 1) return onRequest(msg, key, from.port, from.address);
  const t = transfers.get(key);
  if (!t) return;
  if (opcode === 4 && msg.length >= 4 && msg.readUInt16BE(2) === (t.block & 0xffff)) sendBlock(t, key, from.port, from.address);
  else if (opcode === 5) transfers.delete(key);
});

const sweep = setInterval(() => {
  const now = Date.now();
  for (const [key, t] of transfers) {
    if (now - t.idleSince < 1000) continue;
    if (++t.resends > 10) {
      transfers.delete(key);
      continue;
    }
    t.idleSince = now;
    const [address, port] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
    socket.send(t.last, port, address);
  }
}, 250);

const stop = (): void => {
  clearInterval(sweep);
  socket.close();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
socket.bind(Number(portText), '127.0.0.1', () => process.stdout.write(`node-floor listening on 127.0.0.1:${portText}\n`));
