import type { CommandResult, CommandRunner, CommandSpec } from "../../src/index.js";

/**
 * The command-runner seam for providers that cannot run on this kernel/OS (lvm, lvm-thin, vss):
 * records every command exactly and answers with output recorded from the real tools. Unexpected
 * commands fail loudly, so a test also proves nothing else was run.
 */
export class ScriptedRunner implements CommandRunner {
  readonly calls: CommandSpec[] = [];
  private readonly script: { match: (spec: CommandSpec) => boolean; result: Partial<CommandResult> }[] = [];

  /** Answer the next command matching `argv` (exact command + args) or predicate. */
  on(match: string[] | ((spec: CommandSpec) => boolean), result: Partial<CommandResult> = {}): this {
    const predicate =
      typeof match === "function"
        ? match
        : (spec: CommandSpec) => JSON.stringify([spec.command, ...spec.args]) === JSON.stringify(match);
    this.script.push({ match: predicate, result });
    return this;
  }

  async run(spec: CommandSpec): Promise<CommandResult> {
    this.calls.push(spec);
    const i = this.script.findIndex((s) => s.match(spec));
    if (i < 0) throw new Error(`unexpected command: ${[spec.command, ...spec.args].join(" ")}`);
    const [entry] = this.script.splice(i, 1);
    return { exitCode: 0, signal: null, stdout: "", stderr: "", ...entry!.result };
  }

  /** argv of every call, joined, for compact assertions. */
  get commandLines(): string[] {
    return this.calls.map((c) => [c.command, ...c.args].join(" "));
  }

  get pending(): number {
    return this.script.length;
  }
}
