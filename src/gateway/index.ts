/**
 * The kill-switch gateway (`openfeature-kill-switch/gateway`): enforcement at the LLM and MCP
 * boundaries for agents in any language. DESIGN section 6a, spec KS-15.
 */
export {
  Gateway,
  sendJson,
  type GatewayOptions,
  type GatewayCall,
  type GatewayLogger,
  type GatewayRoute,
  type GatewaySeam,
} from './gateway.js';
export {
  gatewayConfigSchema,
  parseGatewayConfig,
  loadGatewayConfig,
  resolveControlPlaneToken,
  type GatewayConfig,
  type GatewayConfigInput,
  type McpUpstreamConfig,
} from './gateway-config.js';
export {
  refusalOf,
  refusalText,
  refusalData,
  MCP_HALTED_ERROR_CODE,
  EFFECT_KEY_META,
  type GatewayRefusal,
} from './gateway-refusal.js';
export { GatewayMetrics, Seam } from './gateway-metrics.js';
export { LlmProxy, LlmApi } from './llm-proxy.js';
export type { McpGateway } from './mcp-gateway.js';
