import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadVolumeState, saveVolumeState } from "../src/upload/volume-state.js";
import { tempDir } from "./helpers/system.js";

describe("volume state file", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.cleanup());

  it("keeps the previous backup's unused runs, and drops malformed ones (re-read everything zero)", async () => {
    const path = join(dir.path, "v.json");
    const last = {
      repositoryId: "r",
      restorePointId: "p",
      unused: [[0, 3] as [number, number], [9, 1] as [number, number]],
    };
    await saveVolumeState(path, { volumeKey: "k", last });
    expect(await loadVolumeState(path, "k")).toEqual({ volumeKey: "k", last });
    for (const unused of [[[1]], [[-1, 2]], [[0, 1.5]], "0-3", [["0", 3]]]) {
      writeFileSync(path, JSON.stringify({ volumeKey: "k", last: { ...last, unused } }));
      expect(await loadVolumeState(path, "k")).toEqual({
        volumeKey: "k",
        last: { repositoryId: "r", restorePointId: "p" },
      });
    }
  });
});
