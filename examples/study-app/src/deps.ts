// The study app's dependencies, behind interfaces: in Lambda an ElastiCache/DAX cache and DynamoDB, here
// (and in the tests) in-memory fakes that take the time the real calls take.
export class NotFound extends Error {
  readonly code = "NOT_FOUND";
}
export class Invalid extends Error {
  readonly code = "VALIDATION";
}

export interface Deck {
  id: string;
  cards: string[];
}

export interface DeckCache {
  get(id: string): Promise<Deck | undefined>;
  put(deck: Deck): Promise<void>;
}

export interface DeckTable {
  load(id: string): Promise<Deck>;
  saveAnswer(studentId: string, deckId: string, correct: boolean): Promise<void>;
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A cache that holds what was put in it (per sandbox, like a warm in-process cache). */
export class FakeCache implements DeckCache {
  private readonly decks = new Map<string, Deck>();
  async get(id: string) {
    await wait(1);
    return this.decks.get(id);
  }
  async put(deck: Deck) {
    this.decks.set(deck.id, deck);
  }
}

/** DynamoDB stand-in: decks `deck-*` exist, anything else is not found; 8-15 ms a call. */
export class FakeTable implements DeckTable {
  async load(id: string): Promise<Deck> {
    await wait(8 + (id.length % 8));
    if (!id.startsWith("deck-")) throw new NotFound(id);
    return { id, cards: ["card 1", "card 2", "card 3"] };
  }
  async saveAnswer(): Promise<void> {
    await wait(10);
  }
}
