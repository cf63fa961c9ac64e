// A serverless chat backend (API Gateway -> Lambda): store the user's message, ask the model, store the
// reply. The monitoring plan (duration p95/p99, memory at 80 %, error rate, cold-start rate, critical and
// warning alarms on two SNS topics) is perfmon's dashboard and alarms; the function only times its two
// dependencies and keeps its structured JSON log lines.
import { FakeModel, FakeStore, MessageStore, Model } from "./deps";
import { timed } from "./perfmon";

interface ChatRequest {
  conversationId?: string;
  text?: string;
}

const model: Model = new FakeModel();
const store: MessageStore = new FakeStore();

export const handler = async (event: ChatRequest, context: { awsRequestId: string }) => {
  const conversationId = event.conversationId ?? "default";
  const text = event.text ?? "";
  await timed("message_store", () => store.append(conversationId, "user", text));
  const reply = await timed("llm_completion", () => model.complete(text));
  await timed("message_store", () => store.append(conversationId, "assistant", reply));
  console.log(JSON.stringify({ level: "info", requestId: context.awsRequestId, conversationId, replyChars: reply.length }));
  return { reply };
};
