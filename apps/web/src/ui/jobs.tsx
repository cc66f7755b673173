// A job as a table row, shared by the Jobs, Machine and Dashboard pages (kept out of any page so
// each page stays its own chunk).
import type { Job } from "@bulwark/api";
import { href } from "../router";
import { formatTime } from "./format";
import { ProgressBar } from "./progress";

export function jobKindLabel(kind: Job["kind"]): string {
  return kind.toLowerCase();
}

/** Column headings of a ListTable of JobRows. */
export const JOB_COLUMNS = ["Job", "State", "Progress", "Created", "Problem"] as const;

/** `keep`: the Jobs page's filters and position, so opening a job leaves the list as it was. */
export function JobRow({ job, keep }: { job: Job; keep?: Record<string, string> }) {
  return (
    <tr>
      <td>
        <a href={href(`/jobs/${job.id}`, keep)}>{jobKindLabel(job.kind)}</a>
      </td>
      <td>
        <span className={`state state-${job.state.toLowerCase()}`}>{job.state}</span>
      </td>
      <td>
        <ProgressBar
          value={job.state === "SUCCEEDED" ? 1 : job.progress}
          label={`Progress of ${jobKindLabel(job.kind)} job`}
        />
      </td>
      <td className="nowrap">{formatTime(job.createdAt)}</td>
      <td>{job.errorCode ? `${job.errorMessage ?? ""} (${job.errorCode})` : ""}</td>
    </tr>
  );
}
