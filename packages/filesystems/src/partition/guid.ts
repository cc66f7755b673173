import { corrupt } from "../errors.js";

/** A GUID as stored on disk (first three fields little-endian) to its lower-case text form. */
export function guidToString(bytes: Buffer): string {
  if (bytes.length !== 16) throw corrupt(`GUID must be 16 bytes, got ${bytes.length}`);
  const hex = (b: Buffer): string => b.toString("hex");
  const le = (start: number, end: number): string => hex(Buffer.from(bytes.subarray(start, end)).reverse());
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(bytes.subarray(8, 10))}-${hex(bytes.subarray(10, 16))}`;
}

export const GPT_TYPE = {
  unused: "00000000-0000-0000-0000-000000000000",
  efiSystem: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
  biosBoot: "21686148-6449-6e6f-744e-656564454649",
  linuxFilesystem: "0fc63daf-8483-4772-8e79-3d69d8477de4",
  linuxLvm: "e6d6d379-f507-44c2-a23c-238f2a3df928",
  linuxSwap: "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
  microsoftBasicData: "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
  microsoftReserved: "e3c9e316-0b5c-4db8-817d-f92df00215ae",
  windowsRecovery: "de94bba4-06d1-4d40-a16a-bfd50179d6ac",
} as const;
