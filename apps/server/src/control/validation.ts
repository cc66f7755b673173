import { BulwarkError } from "@bulwark/errors";
import {
  type AgentHello,
  type Command,
  type CommandAck,
  Command as CommandMessage,
  type ConnectRequest,
  type Heartbeat,
  type Inventory,
  JobOutcome,
  type JobProgress,
  type JobResult,
  type LogRecord,
  PROTOCOL_VERSION,
  parseProtocolVersion,
} from "@bulwark/protocol";

// What the server accepts from an agent on the control stream (docs/protocol.md §8): every string
// and list bounded, the sequence strictly increasing by one, the oneof set. Violations are
// BULWARK_PROTO_MALFORMED and end the stream; the bounds are generous for real machines and keep
// one misbehaving agent from filling the catalog or the logs.

/** IDs (command, job, volume, disk): UUIDs, filesystem UUIDs, LV paths, by-id paths. */
export const MAX_ID_LENGTH = 200;
/** Device paths and mount points (Linux PATH_MAX is 4096). */
export const MAX_PATH_LENGTH = 4096;
/** Short free-text fields: versions, models, labels, filesystem types, provider names. */
export const MAX_SHORT_TEXT = 256;
/** A DNS host name is at most 253 characters. */
export const MAX_HOSTNAME_LENGTH = 253;
/** A large storage server has a few hundred volumes; 4096 is far beyond and still cheap to upsert. */
export const MAX_INVENTORY_VOLUMES = 4096;
export const MAX_INVENTORY_DISKS = 1024;
export const MAX_PARTITIONS_PER_DISK = 256;
export const MAX_MOUNT_POINTS = 64;
/** Capabilities, running jobs and heartbeat job lists. */
export const MAX_LIST_ENTRIES = 256;
/** A log record's message: enough for a stack summary, not for a dump. */
export const MAX_LOG_MESSAGE_LENGTH = 8192;
export const MAX_LOG_FIELDS = 32;
/** Most bytes of one command in Redis and on the bus (a backup command with hooks is ~1 KiB). */
export const MAX_COMMAND_BYTES = 64 * 1024;

export function malformed(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_PROTO_MALFORMED", message, details ? { details } : {});
}

function text(value: string, field: string, max: number, opts: { required?: boolean } = {}): void {
  if (opts.required && value.length === 0) throw malformed(`${field} is required`);
  if (value.length > max) throw malformed(`${field} is longer than ${max} characters`);
  // Control characters have no place in any of these fields and would garble logs and the console.
  if (/[\u0000-\u001f\u007f]/.test(value)) throw malformed(`${field} contains control characters`);
}

function list<T>(items: T[], field: string, max: number): void {
  if (items.length > max) throw malformed(`${field} has more than ${max} entries`);
}

function count(value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw malformed(`${field} must be a non-negative integer`);
}

/** The next message's sequence number must be exactly `expected` (1 for the first). */
export function checkSequence(req: ConnectRequest, expected: number): void {
  if (req.seq !== expected) {
    throw malformed(`message seq ${req.seq} where ${expected} was expected`, {
      expected,
      received: req.seq,
    });
  }
}

/** The hello's protocol version must parse and be of our major (the header decides the minor). */
export function checkHello(h: AgentHello): { minor: number } {
  const version = parseProtocolVersion(h.protocolVersion);
  if (!version || version.major !== PROTOCOL_VERSION.major) {
    throw new BulwarkError(
      "BULWARK_PROTO_VERSION_UNSUPPORTED",
      `AgentHello.protocol_version ${JSON.stringify(h.protocolVersion)} is not of protocol major ${PROTOCOL_VERSION.major}`,
    );
  }
  text(h.agentVersion, "agent_version", MAX_SHORT_TEXT, { required: true });
  text(h.hostname, "hostname", MAX_HOSTNAME_LENGTH, { required: true });
  list(h.capabilities, "capabilities", MAX_LIST_ENTRIES);
  for (const c of h.capabilities) text(c, "capability", MAX_SHORT_TEXT);
  list(h.runningJobs, "running_jobs", MAX_LIST_ENTRIES);
  for (const j of h.runningJobs) {
    text(j.jobId, "running_jobs.job_id", MAX_ID_LENGTH, { required: true });
    text(j.sessionId, "running_jobs.session_id", MAX_ID_LENGTH);
  }
  return { minor: version.minor };
}

export function checkHeartbeat(h: Heartbeat): void {
  list(h.runningJobIds, "running_job_ids", MAX_LIST_ENTRIES);
  for (const id of h.runningJobIds) text(id, "running_job_ids", MAX_ID_LENGTH, { required: true });
}

export function checkInventory(inv: Inventory): void {
  list(inv.disks, "disks", MAX_INVENTORY_DISKS);
  list(inv.volumes, "volumes", MAX_INVENTORY_VOLUMES);
  const ids = new Set<string>();
  const unique = (id: string, field: string) => {
    if (ids.has(id)) throw malformed(`${field} ${JSON.stringify(id)} appears twice in the inventory`);
    ids.add(id);
  };
  for (const d of inv.disks) {
    text(d.id, "disk.id", MAX_ID_LENGTH, { required: true });
    unique(d.id, "disk.id");
    text(d.devicePath, "disk.device_path", MAX_PATH_LENGTH, { required: true });
    text(d.model, "disk.model", MAX_SHORT_TEXT);
    text(d.serial, "disk.serial", MAX_SHORT_TEXT);
    text(d.partitionTableId, "disk.partition_table_id", MAX_SHORT_TEXT);
    count(d.sizeBytes, "disk.size_bytes");
    list(d.partitions, "disk.partitions", MAX_PARTITIONS_PER_DISK);
    for (const p of d.partitions) {
      count(p.startBytes, "partition.start_bytes");
      count(p.sizeBytes, "partition.size_bytes");
      text(p.type, "partition.type", MAX_SHORT_TEXT);
      text(p.uuid, "partition.uuid", MAX_SHORT_TEXT);
      text(p.name, "partition.name", MAX_SHORT_TEXT);
      text(p.volumeId, "partition.volume_id", MAX_ID_LENGTH);
    }
  }
  for (const v of inv.volumes) {
    text(v.id, "volume.id", MAX_ID_LENGTH, { required: true });
    unique(v.id, "volume.id");
    text(v.devicePath, "volume.device_path", MAX_PATH_LENGTH, { required: true });
    count(v.sizeBytes, "volume.size_bytes");
    text(v.diskId, "volume.disk_id", MAX_ID_LENGTH);
    list(v.mountPoints, "volume.mount_points", MAX_MOUNT_POINTS);
    for (const m of v.mountPoints) text(m, "volume.mount_points", MAX_PATH_LENGTH);
    list(v.snapshotProviders, "volume.snapshot_providers", MAX_LIST_ENTRIES);
    for (const s of v.snapshotProviders) text(s, "volume.snapshot_providers", MAX_SHORT_TEXT);
    if (v.filesystem) {
      text(v.filesystem.type, "filesystem.type", MAX_SHORT_TEXT);
      text(v.filesystem.uuid, "filesystem.uuid", MAX_SHORT_TEXT);
      text(v.filesystem.label, "filesystem.label", MAX_SHORT_TEXT);
      count(v.filesystem.usedBytes, "filesystem.used_bytes");
    }
    if (v.lvm) {
      text(v.lvm.volumeGroup, "lvm.volume_group", MAX_SHORT_TEXT);
      text(v.lvm.logicalVolume, "lvm.logical_volume", MAX_SHORT_TEXT);
      text(v.lvm.thinPool, "lvm.thin_pool", MAX_SHORT_TEXT);
    }
  }
}

export function checkAck(a: CommandAck): void {
  text(a.commandId, "command_ack.command_id", MAX_ID_LENGTH, { required: true });
  if (a.error) {
    text(a.error.code, "command_ack.error.code", MAX_SHORT_TEXT);
    text(a.error.message.replace(/\n/g, " "), "command_ack.error.message", MAX_LOG_MESSAGE_LENGTH);
  }
}

export function checkProgress(p: JobProgress): void {
  text(p.jobId, "job_progress.job_id", MAX_ID_LENGTH, { required: true });
  for (const [k, v] of Object.entries({
    bytes_done: p.bytesDone,
    bytes_total: p.bytesTotal,
    bytes_transferred: p.bytesTransferred,
    rate_bytes_per_second: p.rateBytesPerSecond,
  }))
    count(v, `job_progress.${k}`);
}

export function checkResult(r: JobResult): void {
  text(r.jobId, "job_result.job_id", MAX_ID_LENGTH, { required: true });
  if (
    r.outcome !== JobOutcome.JOB_OUTCOME_SUCCEEDED &&
    r.outcome !== JobOutcome.JOB_OUTCOME_FAILED &&
    r.outcome !== JobOutcome.JOB_OUTCOME_CANCELLED
  ) {
    throw malformed("job_result.outcome must be SUCCEEDED, FAILED or CANCELLED");
  }
  text(r.restorePointId, "job_result.restore_point_id", MAX_ID_LENGTH);
  if (r.error) {
    text(r.error.code, "job_result.error.code", MAX_SHORT_TEXT);
    text(r.error.message.replace(/\n/g, " "), "job_result.error.message", MAX_LOG_MESSAGE_LENGTH);
  }
}

export function checkLog(l: LogRecord): void {
  text(l.message.replace(/[\n\t]/g, " "), "log.message", MAX_LOG_MESSAGE_LENGTH);
  text(l.jobId, "log.job_id", MAX_ID_LENGTH);
  const fields = Object.entries(l.fields);
  list(fields, "log.fields", MAX_LOG_FIELDS);
  for (const [k, v] of fields) {
    text(k, "log.fields key", MAX_SHORT_TEXT);
    text(v, "log.fields value", MAX_SHORT_TEXT);
  }
}

/** A command handed to dispatch(): an ID, a body, a job ID where the body has one, a bounded size. */
export function checkCommand(c: Command): void {
  const invalid = (message: string) => new BulwarkError("BULWARK_CONTROL_COMMAND_INVALID", message);
  if (!c.commandId || c.commandId.length > MAX_ID_LENGTH) {
    throw invalid(`command_id must have 1 to ${MAX_ID_LENGTH} characters`);
  }
  const body = c.command;
  if (!body) throw invalid("the command has no body (backup, restore, cancel, ...)");
  if (
    (body.$case === "backup" || body.$case === "restore" || body.$case === "cancel") &&
    (!body.value.jobId || body.value.jobId.length > MAX_ID_LENGTH)
  ) {
    throw invalid(`a ${body.$case} command needs a job_id of 1 to ${MAX_ID_LENGTH} characters`);
  }
  if (body.$case === "backup" && !body.value.target) {
    throw invalid("a backup command needs a volume_id or disk_id");
  }
  const size = CommandMessage.encode(c).finish().length;
  if (size > MAX_COMMAND_BYTES) throw invalid(`the command is ${size} bytes; at most ${MAX_COMMAND_BYTES}`);
}
