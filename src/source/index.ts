export { SourceStatus, type FlipSource, type FlipSourceListener } from './flip-source.js';
export { StoreFlipSource } from './store-flip-source.js';
