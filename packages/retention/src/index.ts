export {
  bucketKey,
  isoWeek,
  isValidTimeZone,
  type LocalTime,
  localTime,
  MAX_TIME,
  MIN_TIME,
  normalizeTimeZone,
} from "./buckets.js";
export {
  type KeepReason,
  planRetention,
  type RetentionOptions,
  type RetentionPlan,
  type RetentionPoint,
} from "./plan.js";
export {
  type BucketUnit,
  bucketUnits,
  isEmptyPolicy,
  keepsNothing,
  parseRetentionPolicy,
  type RetentionPolicy,
  type RetentionRule,
  retentionPolicySchema,
  retentionRules,
} from "./policy.js";
