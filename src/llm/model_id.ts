import { KlymError } from "../errors.ts";
/**
 * The `provider:model` form of `KLYM_MODEL` and `KLYM_MODELS`, checked without loading any provider
 * package, so the configuration can validate model ids cheaply.
 */

const PROVIDERS = ["openai", "openai-compatible", "ollama", "anthropic", "google"] as const;
export type Provider = (typeof PROVIDERS)[number];

export interface ModelSettings {
  model?: string | undefined;
  models: string[];
  openaiCompatibleUrl?: string | undefined;
  openaiCompatibleKey?: string | undefined;
}

/** Checks a `provider:model` string; the message says what is wrong and how to fix it. */
export function parseModelId(
  id: string,
  settings: Pick<ModelSettings, "openaiCompatibleUrl">,
): { provider: Provider; name: string } {
  const colon = id.indexOf(":");
  const provider = id.slice(0, colon) as Provider;
  const name = id.slice(colon + 1);
  if (colon < 1 || !name) {
    throw new KlymError(
      "CONFIG_INVALID",
      `Model "${id}" must be written provider:model, e.g. openai:gpt-4o-mini`,
    );
  }
  if (!PROVIDERS.includes(provider)) {
    throw new KlymError(
      "CONFIG_INVALID",
      `Model "${id}" names an unknown provider "${provider}"; known: ${PROVIDERS.join(", ")}`,
    );
  }
  if (provider === "openai-compatible" && !settings.openaiCompatibleUrl) {
    throw new KlymError(
      "CONFIG_INVALID",
      `Model "${id}" needs KLYM_OPENAI_COMPATIBLE_URL (a base URL ending in /v1)`,
    );
  }
  return { provider, name };
}
