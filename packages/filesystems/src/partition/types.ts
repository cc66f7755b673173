import type { ByteRange } from "../ranges.js";

export type PartitionTableType = "mbr" | "gpt";

export interface Partition {
  /** 1-based number as the OS names it (sda1…; logical MBR partitions start at 5). */
  number: number;
  offset: number;
  length: number;
  /** MBR: the type byte as two hex digits ("83"); GPT: the type GUID in lower case. */
  type: string;
  /** GPT unique partition GUID; MBR: `<disk signature>-<number>` as Linux reports PARTUUID. */
  uuid?: string;
  name?: string;
  bootable?: boolean;
  /** GPT attribute bits as a decimal string (64-bit). */
  attributes?: string;
  /** MBR: primary or logical. */
  kind?: "primary" | "logical";
}

export interface PartitionTable {
  type: PartitionTableType;
  sectorSize: number;
  /** GPT disk GUID, or MBR disk signature as 8 hex digits. */
  diskId: string;
  partitions: Partition[];
  /**
   * Bytes a bare-metal restore must write besides the partitions: MBR + the gap before the first
   * partition (boot loaders live there), every EBR, and the primary and backup GPT structures.
   */
  metadataRegions: ByteRange[];
  /** Problems that were survived, e.g. "primary GPT header damaged, used the backup". */
  warnings: string[];
}
