// The study app's API function ("Task 12"): get a deck (cache first), submit an answer. The original
// computed response-time statistics, error rates by type and the cache hit rate itself and sent them
// with putMetricData; with perfmon response time percentiles, errors, throttling inputs and cost come
// from the platform, operations carry their error types, and the cache reports one metric a lookup.
import { Deck, DeckCache, DeckTable, FakeCache, FakeTable, Invalid } from "./deps";
import { metric, timed } from "./perfmon";

interface StudyEvent {
  action: "getDeck" | "submitAnswer";
  deckId?: string;
  studentId?: string;
  correct?: boolean;
}

const cache: DeckCache = new FakeCache();
const table: DeckTable = new FakeTable();

async function getDeck(id: string): Promise<Deck> {
  const cached = await cache.get(id);
  // CacheHit 1 or 0: its Average is the hit rate (target 60 %).
  await metric({ name: "CacheHit", value: cached ? 1 : 0, unit: "Count" });
  if (cached) return cached;
  const deck = await table.load(id);
  await cache.put(deck);
  return deck;
}

export const handler = async (event: StudyEvent) => {
  if (event.action === "getDeck") {
    const deck = await timed("get_deck", () => getDeck(event.deckId ?? ""));
    return { deck: deck.id, cards: deck.cards.length };
  }
  await timed("submit_answer", async () => {
    if (!event.studentId || !event.deckId || typeof event.correct !== "boolean") throw new Invalid("incomplete answer");
    await table.saveAnswer(event.studentId, event.deckId, event.correct);
  });
  return { saved: true };
};
