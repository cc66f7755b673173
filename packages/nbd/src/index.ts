export * from "./constants.js";
export { COW_BLOCK_BYTES, CowOverlay } from "./cow-overlay.js";
export { type NbdLogger, silentLogger } from "./logger.js";
export { padToSector, SECTOR_BYTES } from "./sector-padding.js";
export {
  type AddExportOptions,
  DEFAULT_EXPORT_CONNECTIONS,
  DEFAULT_LISTENER_CONNECTIONS,
  type ExportInfo,
  NbdServer,
  type NbdServerOptions,
  type OpenedExport,
} from "./server.js";
export type { BlockSource, WritableBlockDevice } from "./source.js";
