// Prints the name of the migrated template database for tests (see testing.ts).
import { prepareTestTemplate } from "./testing.js";

console.log(await prepareTestTemplate());
