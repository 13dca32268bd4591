/** Replicated block device: public API (see docs/replication.md). */
export { ReplicatedBackstore } from './backstore.js';
export {
  ConfigError,
  loadResourceConfig,
  metaPath,
  type NodeConfig,
  parseResourceConfig,
  type ResourceConfig,
} from './config.js';
export {
  CONTROL_COMMANDS,
  type ControlRequest,
  controlRequest,
  execute,
  startControlServer,
} from './control.js';
export { ReplicationError, Resource, type ResourceOptions } from './resource.js';
export {
  CONN_STATES,
  type ConnState,
  DISK_STATES,
  type DiskState,
  PROTOCOLS,
  type Protocol,
  REPL_STATES,
  type ReplState,
  ROLES,
  type Role,
} from './states.js';
export { type PeerStatus, procText, type ResourceStatus, resourceStatus, statusText } from './status.js';
