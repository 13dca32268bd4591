export { Acl, type AclConfig } from './acl.js';
export { IscsiConnection } from './connection.js';
export { Portal, type PortalConfig } from './portal.js';
export {
  IscsiServer,
  type IscsiServerConfig,
  type IscsiTargetConfig,
  type LoginFailedEvent,
  type SessionInfo,
} from './server.js';
export type { DigestName, SessionParams } from './session/params.js';
