// A voice assistant's backend (the skill's fulfilment function). Its performance guide set latency
// targets (cold start < 150 ms, API < 200 ms, DB < 50 ms) and alerts at 2x target; perfmon's alarms take
// the targets as written (`--ALARM-target`, `target-multiple = 2`), the function only times its DB read.
import { FakeSessions, Sessions } from "./deps";
import { timed } from "./perfmon";

interface VoiceRequest {
  sessionId?: string;
  intent?: string;
}

const sessions: Sessions = new FakeSessions();

export const handler = async (event: VoiceRequest) => {
  const session = await timed("db_query", () => sessions.lookup(event.sessionId ?? "anonymous"));
  const speech = event.intent === "time" ? `It is ${new Date().toISOString().slice(11, 16)} UTC` : "Hello!";
  return { version: "1.0", response: { outputSpeech: { type: "PlainText", text: speech }, locale: session.locale } };
};
