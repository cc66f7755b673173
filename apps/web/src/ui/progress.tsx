// A job's progress bar, and the live state of one job from the server-sent events endpoint.
import { type Job, type JobProgressEvent, jobProgressEventSchema, TERMINAL_JOB_STATES } from "@bulwark/api";
import { useEffect, useState } from "react";
import { api } from "../api/endpoints";
import { formatBytes, formatPercent } from "./format";

export function ProgressBar({ value, label }: { value: number; label: string }) {
  const clamped = Math.max(0, Math.min(1, value));
  return (
    <div className="progress">
      <progress max={1} value={clamped} aria-label={label} />
      <span>{formatPercent(clamped)}</span>
    </div>
  );
}

export function isTerminal(state: Job["state"]): boolean {
  return (TERMINAL_JOB_STATES as readonly string[]).includes(state);
}

/** No event for this long (the server sends one at least every 15 s) means the stream is stuck. */
const STREAM_SILENCE_MS = 40_000;

export type LiveJob = { event?: JobProgressEvent; problem?: string };

/** Follows GET /jobs/:id/events; reconnects after the server's 10-minute limit. */
export function useLiveJob(jobId: string | undefined): LiveJob {
  const [live, setLive] = useState<LiveJob>({});
  useEffect(() => {
    if (!jobId) return;
    setLive({});
    let done = false;
    const source = new EventSource(api.jobEventsUrl(jobId), { withCredentials: true });
    let silence = setTimeout(() => undefined, 0);
    const arm = () => {
      clearTimeout(silence);
      silence = setTimeout(() => {
        if (!done) setLive((l) => ({ ...l, problem: "No progress from the server for 40 s; still trying." }));
      }, STREAM_SILENCE_MS);
    };
    arm();
    const onProgress = (e: MessageEvent<string>) => {
      arm();
      const parsed = jobProgressEventSchema.safeParse(JSON.parse(e.data));
      if (parsed.success) setLive({ event: parsed.data });
    };
    source.addEventListener("progress", onProgress);
    source.addEventListener("end", () => {
      done = true;
      clearTimeout(silence);
      source.close();
      // The end event names only the state: read the finished job once for its numbers.
      void api.job(jobId).then(
        (job) => setLive({ event: { ...job } }),
        () => undefined,
      );
    });
    source.onerror = () => {
      if (!done) setLive((l) => ({ ...l, problem: "The live connection dropped; reconnecting…" }));
    };
    return () => {
      done = true;
      clearTimeout(silence);
      source.close();
    };
  }, [jobId]);
  return live;
}

/** A job's live state, following the events itself. */
export function JobLive({ jobId, initial }: { jobId: string; initial?: Job }) {
  return <JobLiveView live={useLiveJob(jobId)} initial={initial} />;
}

export function JobLiveView({ live, initial }: { live: LiveJob; initial?: Job }) {
  const ev = live.event ?? initial;
  if (!ev) return <p role="status">Connecting to the job's live progress…</p>;
  return (
    <div className="job-live" aria-live="polite">
      <p>
        State: <strong className={`state state-${ev.state.toLowerCase()}`}>{ev.state}</strong>
        {ev.bytesTotal !== null && ` — ${formatBytes(ev.bytesDone)} of ${formatBytes(ev.bytesTotal)}`}
      </p>
      <ProgressBar value={ev.state === "SUCCEEDED" ? 1 : ev.progress} label="Job progress" />
      {ev.errorCode &&
        // A cancel is what someone asked for, not a failure: said plainly, not as an alert.
        (ev.state === "CANCELLED" ? (
          <p className="meta">
            {ev.errorMessage} ({ev.errorCode})
          </p>
        ) : (
          <p className="problem" role="alert">
            {ev.errorMessage} ({ev.errorCode})
          </p>
        ))}
      {live.problem && !isTerminal(ev.state) && <p className="meta">{live.problem}</p>}
    </div>
  );
}
