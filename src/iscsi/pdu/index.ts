export * from './codec.js';
export * from './constants.js';
export * from './framing.js';
export * from './text.js';
export type * from './types.js';
