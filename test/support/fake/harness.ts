/** Harnesses: a session under test wired to a test client over a fake network, on one virtual clock. */
import { buildOack, negotiateOptions, type NegotiationLimits } from '../../../src/tftp/protocol/options.js';
import { ReadSession } from '../../../src/tftp/session/read-session.js';
import type { RetransmitPolicy, TransferStats } from '../../../src/tftp/session/types.js';
import { WriteSession } from '../../../src/tftp/session/write-session.js';
import { TestReader, TestWriter, type ReaderOptions, type WriterOptions } from './clients.js';
import { VirtualClock } from './clock.js';
import { MemorySink, MemorySource, type MemorySinkOptions, type MemorySourceOptions } from './memory-storage.js';
import { FakeNetwork, type NetworkOptions, type PacketHandler } from './network.js';

export const TEST_POLICY: RetransmitPolicy = { initialMs: 200, minMs: 50, maxMs: 2000, maxRetries: 5 };

export interface HarnessOptions extends NetworkOptions {
  /** Options the client asks for (before negotiation), in order. */
  readonly request?: Record<string, string>;
  readonly limits?: Partial<NegotiationLimits>;
  readonly policy?: RetransmitPolicy;
}

interface HarnessBase {
  readonly clock: VirtualClock;
  readonly net: FakeNetwork;
  readonly ends: TransferStats[];
  readonly oack: ReadonlyMap<string, string>;
  /** Starts session and client. */
  start(): void;
  /** Runs the virtual world until nothing is left to do. */
  runToIdle(limitMs?: number): Promise<void>;
}

export interface ReadHarness extends HarnessBase {
  readonly session: ReadSession;
  readonly source: MemorySource;
  readonly client: TestReader;
}

export interface WriteHarness extends HarnessBase {
  readonly session: WriteSession;
  readonly sink: MemorySink;
  readonly client: TestWriter;
}

function negotiate(options: HarnessOptions, tsize: number | undefined) {
  const requested = new Map(Object.entries(options.request ?? {}));
  const negotiated = negotiateOptions(requested, {
    maxBlksize: options.limits?.maxBlksize ?? 65464,
    maxWindowsize: options.limits?.maxWindowsize ?? 64,
    ...(options.limits?.refused ? { refused: options.limits.refused } : {}),
  });
  const oack = buildOack(requested, negotiated, tsize ?? negotiated.requestedTsize);
  return { negotiated, oack };
}

/** The virtual world of one harness: its clock, its network, the session's end reports. */
interface World {
  readonly clock: VirtualClock;
  readonly net: FakeNetwork;
  readonly ends: TransferStats[];
}

function newWorld(options: NetworkOptions): World {
  const clock = new VirtualClock();
  return { clock, net: new FakeNetwork(clock, options), ends: [] };
}

/** What every session under test is given: the network, its own tagged clock, the policy, the negotiation, the end report. */
function sessionBase(w: World, options: HarnessOptions, negotiated: ReturnType<typeof negotiate>['negotiated'], oack: ReadonlyMap<string, string>) {
  return {
    peer: w.net.serverPeer,
    clock: w.clock.tagged('session'),
    policy: options.policy ?? TEST_POLICY,
    options: negotiated,
    oack,
    onEnd: (stats: TransferStats) => {
      w.net.serverEnded = true;
      w.ends.push(stats);
    },
  };
}

/** Wires session and client to the network. */
function connect(w: World, oack: ReadonlyMap<string, string>, session: PacketHandler & { start(): void }, client: PacketHandler & { start(): void }): HarnessBase {
  w.net.connect(session, client);
  return {
    ...w,
    oack,
    start: () => {
      session.start();
      client.start();
    },
    runToIdle: (limitMs) => w.clock.runUntilIdle(limitMs),
  };
}

export function readHarness(
  data: Buffer,
  options: HarnessOptions & {
    readonly source?: MemorySourceOptions;
    readonly client?: ReaderOptions;
    readonly maxBytesInFlight?: number;
  } = {},
): ReadHarness {
  const w = newWorld(options);
  const source = new MemorySource(data, w.clock, options.source ?? {});
  const tsize = source.size !== undefined && source.size > 0 ? source.size : undefined;
  const { negotiated, oack } = negotiate(options, tsize);
  const session = new ReadSession({
    ...sessionBase(w, options, negotiated, oack),
    source,
    maxBytesInFlight: options.maxBytesInFlight ?? 1 << 20,
  });
  const client = new TestReader(w.clock.tagged('client'), (b) => w.net.clientSend(b), options.client ?? {});
  return { ...connect(w, oack, session, client), session, source, client };
}

export function writeHarness(
  wire: Buffer,
  options: HarnessOptions & {
    readonly sink?: MemorySinkOptions;
    readonly client?: WriterOptions;
    readonly netascii?: boolean;
    readonly maxBytes?: number;
  } = {},
): WriteHarness {
  const w = newWorld(options);
  const sink = new MemorySink(w.clock, options.sink ?? {});
  const { negotiated, oack } = negotiate(options, undefined);
  const session = new WriteSession({
    ...sessionBase(w, options, negotiated, oack),
    sink,
    netascii: options.netascii ?? false,
    maxBytes: options.maxBytes ?? Number.MAX_SAFE_INTEGER,
    // As the dispatcher decides: a WRQ without options comes from an RFC 1350 sender.
    classicSender: Object.keys(options.request ?? {}).length === 0,
  });
  const client = new TestWriter(w.clock.tagged('client'), (b) => w.net.clientSend(b), wire, options.client ?? {});
  return { ...connect(w, oack, session, client), session, sink, client };
}
