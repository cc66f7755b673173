import { readFile, stat } from "node:fs/promises";

/** major:minor of a block device, as /proc/self/mountinfo prints it. */
export async function deviceNumber(path: string): Promise<string | undefined> {
  const s = await stat(path);
  if (!s.isBlockDevice()) return undefined;
  const major = Math.floor(s.rdev / 256) & 0xfff;
  const minor = (s.rdev & 0xff) | ((s.rdev >> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** Mount points of a block device per /proc/self/mountinfo (field 3 is major:minor, field 5 the mount point). */
export async function mountPointsOf(
  devicePath: string,
  mountinfo = "/proc/self/mountinfo",
): Promise<string[]> {
  const dev = await deviceNumber(devicePath);
  if (!dev) return [];
  const text = await readFile(mountinfo, "utf8");
  const points: string[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields[2] === dev && fields[4]) points.push(unescapeMountPath(fields[4]));
  }
  return points;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}
