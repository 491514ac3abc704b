/** Splits a byte stream into text lines, capping each line so one runaway write cannot exhaust memory. */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
  maxLineBytes: number,
): AsyncGenerator<{ line: string; truncated: boolean }> {
  const decoder = new TextDecoder();
  let pending = "";
  let truncated = false;
  for await (const chunk of stream) {
    let text = decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = text.indexOf("\n")) !== -1) {
      const line = truncated ? pending : pending + text.slice(0, newline);
      yield { line: line.endsWith("\r") ? line.slice(0, -1) : line, truncated };
      pending = "";
      truncated = false;
      text = text.slice(newline + 1);
    }
    if (!truncated) {
      pending += text;
      if (pending.length > maxLineBytes) {
        pending = pending.slice(0, maxLineBytes);
        truncated = true;
      }
    }
  }
  pending += decoder.decode();
  if (pending) yield { line: pending, truncated };
}
