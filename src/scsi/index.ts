/** Transport-free SCSI core: public API. */
export type { CommandDescriptor, DataDirection } from './command.js';
export type { LogicalUnit, LogicalUnitConfig, ModeState } from './lu.js';
export { COMMANDS, Opcode, ServiceAction } from './opcodes.js';
export {
  Asc,
  ascName,
  buildSense,
  type FieldPointer,
  type ParsedSense,
  parseSense,
  type SenseInfo,
  SenseKey,
  senseKeyName,
} from './sense.js';
export { createScsiTarget, type LunarScsiTarget, MAX_LUN, type ScsiTargetConfig } from './target.js';
export * from './types.js';
