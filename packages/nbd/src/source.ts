/** Where an export's bytes come from: a restore point's reader, a file, a buffer. */
export interface BlockSource {
  readonly size: number;
  /** Bytes [offset, offset + length); callers stay within size. */
  read(offset: number, length: number): Promise<Buffer>;
}

/** A source that also takes writes (the copy-on-write overlay). */
export interface WritableBlockDevice extends BlockSource {
  write(offset: number, data: Buffer): Promise<void>;
  /** After this the range reads as zeros (TRIM and WRITE_ZEROES). */
  zero(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
