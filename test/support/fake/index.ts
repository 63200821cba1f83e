/**
 * An in-process network for session tests: a virtual clock, lossy links driven by a seeded PRNG,
 * minimal RFC-correct TFTP clients (reader and writer, with RFC 7440 windows) and in-memory
 * storage fakes. Nothing here touches a socket or the wall clock, so a run is fast and the same
 * seed always gives the same packet history.
 *
 * Client-side packets are built by hand (not with the codec under test), so a codec bug cannot
 * hide itself; packets are decoded with `decodePacket`, as the dispatcher does.
 */
export { mulberry32, seededBytes } from '../prng.js';
export * from './clock.js';
export * from './datagrams.js';
export * from './network.js';
export * from './clients.js';
export * from './memory-storage.js';
export * from './harness.js';
