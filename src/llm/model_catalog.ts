/**
 * The models Klym may use, built from `KLYM_MODEL` (the default) and `KLYM_MODELS` (more a task may
 * name), each `provider:model`. Keys come from the providers' usual environment variables and stay
 * in the main isolate.
 */
import type { LanguageModel } from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createGoogleGenerativeAI } from "@ai-sdk/google";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { type ModelSettings, ModelSpecError, parseModelId, type Provider } from "./model_id.ts";

const OLLAMA_URL = "http://127.0.0.1:11434/v1";

export interface ModelInfo {
  readonly id: string;
  readonly provider: Provider;
  readonly name: string;
  readonly isDefault: boolean;
}

export class ModelCatalog {
  readonly #models = new Map<string, LanguageModel>();
  readonly defaultId: string | undefined;

  constructor(readonly settings: ModelSettings, env: (name: string) => string | undefined) {
    const ids = [...new Set([...(settings.model ? [settings.model] : []), ...settings.models])];
    for (const id of ids) {
      const { provider, name } = parseModelId(id, settings);
      this.#models.set(id, createModel(provider, name, settings, env));
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

  /** The model for `id` (or the default); `undefined` when none is configured at all. */
  get(id: string | undefined): { id: string; model: LanguageModel } | undefined {
    const chosen = id ?? this.defaultId;
    if (chosen === undefined) return undefined;
    const model = this.#models.get(chosen);
    if (!model) {
      throw new ModelSpecError(
        `Model "${chosen}" is not configured; configured: ${
          [...this.#models.keys()].join(", ") || "none"
        } (KLYM_MODEL, KLYM_MODELS)`,
      );
    }
    return { id: chosen, model };
  }
}

function createModel(
  provider: Provider,
  name: string,
  settings: ModelSettings,
  env: (name: string) => string | undefined,
): LanguageModel {
  switch (provider) {
    case "openai":
      return createOpenAI({
        apiKey: env("OPENAI_API_KEY") ?? "",
        ...(env("OPENAI_BASE_URL") ? { baseURL: env("OPENAI_BASE_URL")! } : {}),
      })(name);
    case "anthropic":
      return createAnthropic({ apiKey: env("ANTHROPIC_API_KEY") ?? "" })(name);
    case "google":
      return createGoogleGenerativeAI({
        apiKey: env("GOOGLE_GENERATIVE_AI_API_KEY") ?? env("GEMINI_API_KEY") ?? "",
      })(name);
    case "ollama":
    case "openai-compatible":
      return createOpenAICompatible({
        name: provider,
        baseURL: provider === "ollama"
          ? (settings.openaiCompatibleUrl ?? OLLAMA_URL)
          : settings.openaiCompatibleUrl!,
        ...(settings.openaiCompatibleKey ? { apiKey: settings.openaiCompatibleKey } : {}),
      }).chatModel(name);
    default: {
      const _exhaustive: never = provider;
      return _exhaustive;
    }
  }
}
