import type { AgentPathStep, AgentRestoreRun, StepMeasurement, ToolRun } from "./results.js";

export function median(values: number[]): number {
  if (values.length === 0) throw new Error("median of nothing");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianStep(steps: StepMeasurement[]): StepMeasurement {
  return {
    wallSeconds: median(steps.map((s) => s.wallSeconds)),
    userSeconds: median(steps.map((s) => s.userSeconds)),
    systemSeconds: median(steps.map((s) => s.systemSeconds)),
    maxRssBytes: median(steps.map((s) => s.maxRssBytes)),
  };
}

function medianAgentStep(steps: AgentPathStep[]): AgentPathStep {
  return {
    bytesSent: median(steps.map((s) => s.bytesSent)),
    serverPeakRssBytes: median(steps.map((s) => s.serverPeakRssBytes)),
  };
}

/** Medians of the issue-6 restore measurements; verified only if every run's restores were. */
export function medianAgentRestore(runs: AgentRestoreRun[]): AgentRestoreRun {
  const first = runs[0];
  if (!first) throw new Error("median of no restore runs");
  const m = (pick: (r: AgentRestoreRun) => number) => median(runs.map(pick));
  return {
    full: {
      bytesFetched: m((r) => r.full.bytesFetched),
      serverCpuSeconds: m((r) => r.full.serverCpuSeconds),
    },
    delta: {
      ...medianStep(runs.map((r) => r.delta)),
      changedBlocks: first.delta.changedBlocks,
      bytesFetched: m((r) => r.delta.bytesFetched),
      volumeBytes: first.delta.volumeBytes,
      chunksUnchanged: m((r) => r.delta.chunksUnchanged),
      serverCpuSeconds: m((r) => r.delta.serverCpuSeconds),
      verified: runs.every((r) => r.delta.verified),
    },
    file: {
      path: first.file.path,
      bytes: first.file.bytes,
      headersSeconds: m((r) => r.file.headersSeconds),
      firstByteSeconds: m((r) => r.file.firstByteSeconds),
      lastByteSeconds: m((r) => r.file.lastByteSeconds),
      verified: runs.every((r) => r.file.verified),
    },
  };
}

/**
 * Folds repeated runs (`runs[r]` lists the tools of run r, same order) into one result per tool:
 * the median of every measurement. Growth is the median of each run's own growth, so a noisy
 * repository size in one run cannot skew the growth factor. A restore counts as verified only if
 * every run's restore returned the image.
 */
export function aggregateRuns(runs: ToolRun[][]): ToolRun[] {
  const first = runs[0];
  if (!first) throw new Error("no runs to aggregate");
  return first.map((template, t) => {
    const all = runs.map((run) => {
      const tool = run[t];
      if (tool?.tool !== template.tool) throw new Error("runs list different tools");
      return tool;
    });
    const ingestBytes = median(all.map((r) => r.ingest.repoBytes));
    const growth = median(all.map((r) => r.incremental.repoBytes - r.ingest.repoBytes));
    const failed = all.find((r) => !r.restore.verified);
    const agent = all.map((r) => r.agentPath).filter((a) => a !== undefined);
    const restores = all.map((r) => r.agentRestore).filter((a) => a !== undefined);
    const floors = all.map((r) => r.floor).filter((f) => f !== undefined);
    // The optional measurements are kept only when every run has them (below), not from run 0 alone.
    const { agentPath: _path, agentRestore: _restore, floor: _floor, ...common } = template;
    return {
      ...common,
      ingest: { ...medianStep(all.map((r) => r.ingest)), repoBytes: ingestBytes },
      incremental: { ...medianStep(all.map((r) => r.incremental)), repoBytes: ingestBytes + growth },
      restore: {
        ...medianStep(all.map((r) => r.restore)),
        verified: !failed,
        restoredSha256: (failed ?? template).restore.restoredSha256,
        ...(failed?.restore.mismatch ? { mismatch: failed.restore.mismatch } : {}),
      },
      ...(agent.length === all.length && agent.length > 0
        ? {
            agentPath: {
              ingest: medianAgentStep(agent.map((a) => a.ingest)),
              incremental: medianAgentStep(agent.map((a) => a.incremental)),
            },
          }
        : {}),
      ...(restores.length === all.length && restores.length > 0
        ? { agentRestore: medianAgentRestore(restores) }
        : {}),
      ...(floors.length === all.length && floors.length > 0
        ? {
            floor: {
              packed: medianStep(floors.map((f) => f.packed)),
              files: medianStep(floors.map((f) => f.files)),
            },
          }
        : {}),
    };
  });
}
