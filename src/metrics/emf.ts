/**
 * CloudWatch Embedded Metric Format: one JSON line on stdout per interval, which CloudWatch Logs
 * turns into the `TftpGateway/ActiveSessions` metric (dimension ServiceName) the ECS service
 * scales on. No agent and no API call: the awslogs driver ships the line like any other.
 */

export const EMF_NAMESPACE = 'TftpGateway';
export const EMF_METRIC = 'ActiveSessions';
export const EMF_DIMENSION = 'ServiceName';

/** The EMF record for one sample. */
export function emfRecord(serviceName: string, activeSessions: number, timestampMs: number): string {
  return JSON.stringify({
    _aws: {
      Timestamp: Math.round(timestampMs),
      CloudWatchMetrics: [
        {
          Namespace: EMF_NAMESPACE,
          Dimensions: [[EMF_DIMENSION]],
          Metrics: [{ Name: EMF_METRIC, Unit: 'Count' }],
        },
      ],
    },
    [EMF_DIMENSION]: serviceName,
    [EMF_METRIC]: activeSessions,
  });
}

export interface EmfReporterOptions {
  readonly serviceName: string;
  readonly intervalMs: number;
  /** Current number of sessions. */
  readonly activeSessions: () => number;
  /** Writes one line (the logger's destination, so it never interleaves with log lines). */
  readonly write: (line: string) => void;
  readonly now?: () => number;
}

/** Writes an EMF record every `intervalMs` until stopped (the timer never keeps the process alive). */
export class EmfReporter {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: EmfReporterOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.emit(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Writes one record now. */
  emit(): void {
    const now = this.options.now?.() ?? Date.now();
    this.options.write(emfRecord(this.options.serviceName, this.options.activeSessions(), now));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
