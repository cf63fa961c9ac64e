// A WebSocket chat API (API Gateway WebSocket routes $connect and sendMessage). The original wrapped each
// operation in a PerformanceMonitoringService (startMonitoring / complete, HandlerDuration, MemoryUsage
// and ErrorRate per Handler x Environment, putMetricData); with perfmon each is one `timed` call and the
// Environment dimension comes from PERFMON_DIMENSIONS.
import { FakeVerifier, TokenVerifier } from "./auth";
import { timed } from "./perfmon";

interface WsEvent {
  requestContext: { routeKey: string; connectionId: string };
  queryStringParameters?: { token?: string };
  body?: string;
}

const verifier: TokenVerifier = new FakeVerifier();
const connections = new Map<string, string>();

async function connect(event: WsEvent) {
  const { userId } = await timed("authentication_jwt_verification", () => verifier.verify(event.queryStringParameters?.token), {
    memory: true,
  });
  connections.set(event.requestContext.connectionId, userId);
  return { statusCode: 200 };
}

async function processMessage(userId: string, text: string) {
  // Stand-in for the model call and the fan-out to the other connections.
  await new Promise((resolve) => setTimeout(resolve, 5 + (text.length % 7)));
  return `${userId}: ${text}`;
}

export const handler = async (event: WsEvent) => {
  const route = event.requestContext.routeKey;
  if (route === "$connect") {
    return timed("websocket_connection", () => connect(event), { memory: true }).catch(() => ({ statusCode: 401 }));
  }
  return timed(
    "websocket_conversation",
    async () => {
      const userId = connections.get(event.requestContext.connectionId) ?? "guest";
      const { text } = JSON.parse(event.body ?? "{}") as { text?: string };
      const reply = await timed("chat_message_processing", () => processMessage(userId, text ?? ""), { memory: true });
      return { statusCode: 200, body: reply };
    },
    { memory: true },
  );
};
