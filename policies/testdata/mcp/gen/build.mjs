// Writes the corpus files from the sessions in this directory: node gen/build.mjs
import { writeFileSync } from "node:fs";
import attacks from "./attacks.mjs";
import heldout from "./heldout.mjs";
import ordinary from "./ordinary.mjs";
import fresh from "./fresh.mjs";

const dir = new URL("..", import.meta.url);
for (const [file, sessions] of [["attacks.json", attacks], ["heldout.json", heldout], ["ordinary.json", ordinary], ["fresh.json", fresh]]) {
  writeFileSync(new URL(file, dir), JSON.stringify(sessions, null, 1) + "\n");
}
