import { request as httpRequest } from "node:http";

/** Sends headers and `first`, never the rest of the declared body; resolves with the answer. */
export function answerBeforeBody(
  url: string,
  headers: Record<string, string | number>,
  first: Buffer | string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers, agent: false });
    const timer = setTimeout(() => reject(new Error("no answer before the body was sent")), 10000);
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, text });
      });
    });
    req.on("error", () => undefined);
    req.write(first);
  });
}
