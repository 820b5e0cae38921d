// snorky.js as an ES module:  import Snorky from "/static/snorky.mjs";
import "./snorky.js";

const Snorky = globalThis.Snorky;
export default Snorky;
export { Snorky };
