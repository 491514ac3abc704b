/** A transport that says when its connection has ended, whoever else listens for that. */
import type { Transport } from "@modelcontextprotocol/server";

/** `transport`, calling `onEnd` once it has closed (the client went away), whoever set `onclose`. */
export function closingWith(transport: Transport, onEnd: () => void): Transport {
  const close = transport.close.bind(transport);
  let ended = false;
  const end = () => {
    if (!ended) (ended = true, onEnd());
  };
  let onclose: (() => void) | undefined;
  Object.defineProperty(transport, "onclose", {
    get: () => () => (onclose?.(), end()),
    set: (handler: (() => void) | undefined) => (onclose = handler),
    configurable: true,
  });
  transport.close = async () => {
    await close();
    end();
  };
  return transport;
}
