export { MemoryFlipLogStore, type MemoryFlipLogStoreOptions } from './memory-flip-log-store.js';
