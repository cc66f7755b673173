import type { Catalog } from "@bulwark/catalog";
import type { Logger } from "pino";
import type { StreamHolders } from "./holders.js";

// Agents whose node died: their stream ended without cleanup, so Agent.connectedNode still names
// the dead node and nobody reported them offline. Every node sweeps now and then: an agent whose
// lastSeenAt is older than the offline limit and whose Redis holder entry is gone (it expired) is
// offline. The conditional update makes exactly one node report it, however many sweep at once.

/** How many stale agents one sweep handles; the next sweep takes the rest. */
const SWEEP_BATCH = 500;

export class PresenceSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly catalog: Catalog,
    private readonly holders: StreamHolders,
    private readonly offlineAfterMs: number,
    private readonly now: () => Date,
    private readonly onOffline: (agentId: string) => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.sweep()
        .then(() => undefined)
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "presence sweep failed"))
        .finally(() => {
          this.running = undefined;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass; returns the agents this node marked offline. */
  async sweep(): Promise<string[]> {
    const cutoff = new Date(this.now().getTime() - this.offlineAfterMs);
    const stale = await this.catalog.agent.findMany({
      where: { connectedNode: { not: null }, OR: [{ lastSeenAt: null }, { lastSeenAt: { lt: cutoff } }] },
      select: { id: true, connectedNode: true },
      take: SWEEP_BATCH,
    });
    const marked: string[] = [];
    for (const agent of stale) {
      if (await this.holders.get(agent.id)) continue; // some node still holds a live stream
      const { count } = await this.catalog.agent.updateMany({
        where: {
          id: agent.id,
          connectedNode: agent.connectedNode,
          OR: [{ lastSeenAt: null }, { lastSeenAt: { lt: cutoff } }],
        },
        data: { connectedNode: null },
      });
      if (count === 1) {
        marked.push(agent.id);
        this.log.info(
          { agentId: agent.id, node: agent.connectedNode },
          "agent offline (its node stopped heartbeating it)",
        );
        await this.onOffline(agent.id);
      }
    }
    return marked;
  }
}
