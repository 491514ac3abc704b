/**
 * The models Klym may use, built from `KLYM_MODEL` (the default) and `KLYM_MODELS` (more a task may
 * name), each `provider:model`. Keys come from the providers' usual environment variables and stay
 * in the main isolate.
 */
import type { LanguageModel } from "ai";
import { type ModelSettings, parseModelId, type Provider } from "./model_id.ts";
import { KlymError } from "../errors.ts";

const OLLAMA_URL = "http://127.0.0.1:11434/v1";

export interface ModelInfo {
  readonly id: string;
  readonly provider: Provider;
  readonly name: string;
  readonly isDefault: boolean;
}

/**
 * The configured models by id. A provider's package is loaded only when one of its models is first
 * asked for: a Klym that answers through the client's sampling never loads any (they cost the
 * server about 20 MB).
 */
export class ModelCatalog {
  readonly #models = new Map<string, Promise<LanguageModel> | undefined>();
  readonly defaultId: string | undefined;

  constructor(
    readonly settings: ModelSettings,
    readonly env: (name: string) => string | undefined,
  ) {
    const ids = [...new Set([...(settings.model ? [settings.model] : []), ...settings.models])];
    for (const id of ids) {
      parseModelId(id, settings);
      this.#models.set(id, undefined);
    }
    this.defaultId = settings.model ?? ids[0];
  }

  get isEmpty(): boolean {
    return this.#models.size === 0;
  }

  list(): ModelInfo[] {
    return [...this.#models.keys()].map((id) => {
      const { provider, name } = parseModelId(id, this.settings);
      return { id, provider, name, isDefault: id === this.defaultId };
    });
  }

  /** The id of the model for `id` (or the default); `undefined` when none is configured at all. */
  get(id: string | undefined): { id: string } | undefined {
    const chosen = id ?? this.defaultId;
    if (chosen === undefined) return undefined;
    if (!this.#models.has(chosen)) {
      throw new KlymError(
        "MODEL_NOT_CONFIGURED",
        `Model "${chosen}" is not configured; configured: ${
          [...this.#models.keys()].join(", ") || "none"
        } (KLYM_MODEL, KLYM_MODELS)`,
      );
    }
    return { id: chosen };
  }

  /** The provider's model for a configured id, its package loaded on first use. */
  model(id: string): Promise<LanguageModel> {
    const { provider, name } = parseModelId(id, this.settings);
    let model = this.#models.get(id);
    if (!model) {
      model = createModel(provider, name, this.settings, this.env);
      this.#models.set(id, model);
    }
    return model;
  }
}

async function createModel(
  provider: Provider,
  name: string,
  settings: ModelSettings,
  env: (name: string) => string | undefined,
): Promise<LanguageModel> {
  switch (provider) {
    case "openai": {
      const { createOpenAI } = await import("@ai-sdk/openai");
      return createOpenAI({
        apiKey: env("OPENAI_API_KEY") ?? "",
        ...(env("OPENAI_BASE_URL") ? { baseURL: env("OPENAI_BASE_URL")! } : {}),
      })(name);
    }
    case "anthropic": {
      const { createAnthropic } = await import("@ai-sdk/anthropic");
      return createAnthropic({ apiKey: env("ANTHROPIC_API_KEY") ?? "" })(name);
    }
    case "google": {
      const { createGoogleGenerativeAI } = await import("@ai-sdk/google");
      return createGoogleGenerativeAI({
        apiKey: env("GOOGLE_GENERATIVE_AI_API_KEY") ?? env("GEMINI_API_KEY") ?? "",
      })(name);
    }
    case "ollama":
    case "openai-compatible": {
      const { createOpenAICompatible } = await import("@ai-sdk/openai-compatible");
      return createOpenAICompatible({
        name: provider,
        baseURL: provider === "ollama"
          ? (settings.openaiCompatibleUrl ?? OLLAMA_URL)
          : settings.openaiCompatibleUrl!,
        ...(settings.openaiCompatibleKey ? { apiKey: settings.openaiCompatibleKey } : {}),
      }).chatModel(name);
    }
    default: {
      const _exhaustive: never = provider;
      return _exhaustive;
    }
  }
}
