// botFlow's daily chat bot: reads the user's recent turns, answers. The original posted ColdStart,
// ExecutionTime and DynamoDBQueryTime with putMetricData on every invoke and logged a performance line;
// with perfmon the platform metrics need no code, and the query is one `timed` operation.
import { timed } from "./perfmon";
import { ConversationStore, FakeStore } from "./store";

interface ChatEvent {
  userId?: string;
  message?: string;
}

const store: ConversationStore = new FakeStore(Number(process.env.FAKE_QUERY_MS ?? 12));

export const handler = async (event: ChatEvent) => {
  const userId = event.userId ?? "anonymous";
  const history = await timed("dynamodb_query", () => store.history(userId));
  return { reply: `You said: ${event.message ?? ""}`, turns: history.length };
};
