// A small inline-SVG step chart (no chart library): stored bytes over time.
import { formatBytes } from "./format";

export interface Point {
  at: Date;
  value: number;
}

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 72, right: 16, top: 12, bottom: 28 };

/** The line runs on to `until` (now): what is stored stays stored, and one point is not a lone dot. */
export function StoredBytesChart({
  points,
  title,
  until = new Date(),
}: {
  points: Point[];
  title: string;
  until?: Date;
}) {
  if (points.length === 0) return null;
  const t0 = points[0]?.at.getTime() ?? 0;
  const t1 = Math.max(points[points.length - 1]?.at.getTime() ?? 0, until.getTime(), t0 + 1);
  const max = Math.max(...points.map((p) => p.value), 1);
  const x = (t: number) => PAD.left + ((t - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (v: number) => HEIGHT - PAD.bottom - (v / max) * (HEIGHT - PAD.top - PAD.bottom);
  let d = "";
  points.forEach((p, i) => {
    const px = x(p.at.getTime());
    const py = y(p.value);
    if (i === 0) d += `M${px},${py}`;
    else d += `H${px}V${py}`;
  });
  d += `H${x(t1)}`;
  const last = points[points.length - 1];
  const summary = `${title}: from ${formatBytes(points[0]?.value ?? 0)} on ${points[0]?.at.toLocaleDateString()} to ${formatBytes(last?.value ?? 0)} now.`;
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={summary}>
        <line x1={PAD.left} y1={y(0)} x2={WIDTH - PAD.right} y2={y(0)} className="axis" />
        <line x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={y(0)} className="axis" />
        <text x={PAD.left - 6} y={y(max) + 4} textAnchor="end">
          {formatBytes(max)}
        </text>
        <text x={PAD.left - 6} y={y(0)} textAnchor="end">
          0
        </text>
        <text x={PAD.left} y={HEIGHT - 8}>
          {points[0]?.at.toLocaleString()}
        </text>
        <text x={WIDTH - PAD.right} y={HEIGHT - 8} textAnchor="end">
          now
        </text>
        <path d={d} className="line" />
        {points.map((p, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: points are fixed and may share a time
          <circle key={i} cx={x(p.at.getTime())} cy={y(p.value)} r={4} className="dot" />
        ))}
      </svg>
      <figcaption>{summary}</figcaption>
    </figure>
  );
}
