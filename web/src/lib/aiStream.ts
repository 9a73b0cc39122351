/**
 * A streamed AI reply (`?stream=true`): server-sent events read from a POST response, the
 * text handed over as it arrives. The server sends a sentence at a time, each checked for
 * insulin amounts; `withheld` replaces everything shown with its notice.
 */
import { csrfToken, problemMessage } from "../api/client";

export interface StreamHandlers {
  /** The reply so far (replaced, not appended, when it is withheld). */
  text: (text: string, withheld: boolean) => void;
}

/** Resolves when the reply is complete; rejects with a message to show. */
export async function streamAi(path: "/api/v1/insights/summary" | "/api/v1/insights/ask", body: unknown, on: StreamHandlers): Promise<void> {
  const headers: Record<string, string> = { accept: "text/event-stream" };
  const csrf = csrfToken();
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${path}?stream=true`, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok || !response.body) {
    throw new Error(problemMessage(await response.json().catch(() => null)));
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let shown = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event:\s*(.*)$/m.exec(block)?.[1]?.trim();
      const data = /^data:\s*(.*)$/m.exec(block)?.[1];
      if (!event || data === undefined) continue;
      const parsed = JSON.parse(data) as { text?: string; detail?: string };
      if (event === "delta") {
        shown += parsed.text ?? "";
        on.text(shown, false);
      } else if (event === "withheld") {
        on.text(parsed.text ?? "", true);
        return;
      } else if (event === "error") {
        throw new Error(parsed.detail ?? "The AI service stopped answering; try again later.");
      } else if (event === "done") {
        return;
      }
    }
  }
  throw new Error("The answer was cut off; try again.");
}
