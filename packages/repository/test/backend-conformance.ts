import { BulwarkError } from "@bulwark/errors";
import { expect, it } from "vitest";
import type { Backend } from "../src/index.js";

/**
 * The one conformance suite every Backend must pass (spec, "Storage backends"). Call it inside a
 * describe() with a factory that returns a fresh, empty backend.
 */
export function backendConformance(make: () => Promise<Backend>): void {
  const bytes = (s: string) => Buffer.from(s, "utf8");

  it("putIfAbsent stores once; the first writer wins", async () => {
    const b = await make();
    expect(await b.putIfAbsent("chunks/ab/x1", bytes("one"))).toBe(true);
    expect(await b.putIfAbsent("chunks/ab/x1", bytes("two"))).toBe(false);
    expect((await b.get("chunks/ab/x1")).toString()).toBe("one");
  });

  it("concurrent putIfAbsent of one key: exactly one creates it, the object is whole", async () => {
    const b = await make();
    const data = Buffer.alloc(200_000, 7);
    const results = await Promise.all(Array.from({ length: 8 }, () => b.putIfAbsent("k/same", data)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await b.get("k/same")).equals(data)).toBe(true);
  });

  it("get of a missing key is BULWARK_REPO_NOT_FOUND; stat is null", async () => {
    const b = await make();
    await expect(b.get("points/none")).rejects.toMatchObject({ code: "BULWARK_REPO_NOT_FOUND" });
    await expect(b.getRange("points/none", 0, 1)).rejects.toMatchObject({ code: "BULWARK_REPO_NOT_FOUND" });
    expect(await b.stat("points/none")).toBeNull();
  });

  it("getRange returns the range, clipped at the end", async () => {
    const b = await make();
    await b.putIfAbsent("r/obj", bytes("0123456789"));
    expect((await b.getRange("r/obj", 2, 3)).toString()).toBe("234");
    expect((await b.getRange("r/obj", 8, 10)).toString()).toBe("89");
    expect((await b.getRange("r/obj", 20, 5)).length).toBe(0);
  });

  it("stat reports size and a modification time; touch renews it", async () => {
    const b = await make();
    const before = Date.now();
    await b.putIfAbsent("s/obj", bytes("abc"));
    const st = await b.stat("s/obj");
    expect(st?.size).toBe(3);
    expect(st!.mtimeMs).toBeGreaterThan(before - 5_000);
    expect(await b.touch("s/obj")).toBe(true);
    expect((await b.stat("s/obj"))!.mtimeMs).toBeGreaterThanOrEqual(st!.mtimeMs);
    expect(await b.touch("s/none")).toBe(false);
  });

  it("list yields every key under a prefix, and only those", async () => {
    const b = await make();
    const keys = ["chunks/aa/1", "chunks/aa/2", "chunks/bb/3", "points/p1", "config"];
    for (const k of keys) await b.putIfAbsent(k, bytes(k));
    const listed: string[] = [];
    for await (const k of b.list("chunks/")) listed.push(k);
    expect(listed.sort()).toEqual(["chunks/aa/1", "chunks/aa/2", "chunks/bb/3"]);
    const none: string[] = [];
    for await (const k of b.list("nothing/")) none.push(k);
    expect(none).toEqual([]);
  });

  it("delete is idempotent", async () => {
    const b = await make();
    await b.putIfAbsent("d/obj", bytes("x"));
    expect(await b.delete("d/obj")).toBe(true);
    expect(await b.delete("d/obj")).toBe(false);
    expect(await b.stat("d/obj")).toBeNull();
  });

  it("rename moves an object (replacing the target) and reports a missing source", async () => {
    const b = await make();
    await b.putIfAbsent("chunks/cc/obj", bytes("x"));
    expect(await b.rename("chunks/cc/obj", "trash/obj")).toBe(true);
    expect(await b.stat("chunks/cc/obj")).toBeNull();
    expect((await b.get("trash/obj")).toString()).toBe("x");
    expect(await b.rename("chunks/cc/obj", "trash/obj")).toBe(false);
  });

  it("replace overwrites atomically", async () => {
    const b = await make();
    await b.replace("sessions/a.alive", bytes("1"));
    await b.replace("sessions/a.alive", bytes("2"));
    expect((await b.get("sessions/a.alive")).toString()).toBe("2");
  });

  it("stage + publish (when offered): invisible until published, then putIfAbsent per object", async () => {
    const b = await make();
    if (!b.stage || !b.publish) return; // optional: callers fall back to putIfAbsent
    expect(await b.putIfAbsent("chunks/ab/p2", bytes("first"))).toBe(true);
    const s1 = await b.stage("chunks/ab/p1", bytes("one"));
    const s2 = await b.stage("chunks/ab/p2", bytes("second"));
    const s3 = await b.stage("chunks/cd/p3", bytes("three")); // a directory that does not exist yet
    expect(await b.stat("chunks/ab/p1")).toBeNull();
    const listed: string[] = [];
    for await (const k of b.list("chunks/")) listed.push(k);
    expect(listed).toEqual(["chunks/ab/p2"]);
    expect(await b.publish([s1, s2, s3])).toEqual([true, false, true]);
    expect((await b.get("chunks/ab/p1")).toString()).toBe("one");
    expect((await b.get("chunks/ab/p2")).toString()).toBe("first"); // the first writer won
    expect((await b.get("chunks/cd/p3")).toString()).toBe("three");
    const dropped = await b.stage("chunks/ab/p4", bytes("four"));
    await b.discard?.([dropped]);
    expect(await b.stat("chunks/ab/p4")).toBeNull();
    const all: string[] = [];
    for await (const k of b.list("chunks/")) all.push(k);
    expect(all.sort()).toEqual(["chunks/ab/p1", "chunks/ab/p2", "chunks/cd/p3"]);
  });

  it("refuses keys that escape the repository", async () => {
    const b = await make();
    for (const k of ["../x", "/etc/passwd", "a//b", "a/./b", ""]) {
      await expect(b.putIfAbsent(k, bytes("x"))).rejects.toBeInstanceOf(BulwarkError);
    }
  });
}
