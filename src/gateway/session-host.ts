import type { TransferFinishedSource } from '../tftp/transfer-report.js';

/**
 * What the gateway's lifecycle (drain, health, scale-in protection, EMF) needs of whatever runs
 * the sessions: the Dispatcher itself (one thread) or the WorkerPool (worker threads).
 */
export interface SessionHost {
  /** Sessions (and requests being opened). */
  readonly activeSessions: number;
  /** Every transfer's finished record (all worker threads'), for subscribers beyond metrics and logs. */
  readonly transfers: TransferFinishedSource;
  /** Told the session count whenever it changes. */
  onActivity: ((active: number) => void) | undefined;
  /** New requests get ERROR 0 "Server shutting down"; sessions go on. */
  startDraining(): void;
  /** Resolves when no session is left. */
  whenIdle(): Promise<void>;
  /** Ends every session now (uploads aborted). */
  abortAll(): void;
  /** Resolves when every upload abort started so far has finished. */
  settled(): Promise<void>;
  /** Stops answering repeated final DATA of finished uploads (shutdown). */
  endLingering(): void;
}
