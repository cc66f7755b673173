/** The slice of pino the NBD server logs through (export IDs and addresses only, never names). */
export interface NbdLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export const silentLogger: NbdLogger = { info: () => undefined, warn: () => undefined };
