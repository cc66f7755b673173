// Catalog rows to API shapes: dates as ISO strings, BigInt byte counts as numbers (exact up to
// 8 PiB, far beyond any volume or repository this API reports).

export function iso(date: Date): string;
export function iso(date: Date | null): string | null;
export function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

export function num(value: bigint): number;
export function num(value: bigint | null): number | null;
export function num(value: bigint | null): number | null {
  return value === null ? null : Number(value);
}
