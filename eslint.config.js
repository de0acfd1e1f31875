// ESLint for the web phone: the recommended rules plus the ones that catch real slips in
// protocol code (unused values, loose equality, shadowing, implicit coercions).
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: { ...globals.browser, ...globals.node },
    },
    rules: {
      eqeqeq: "error",
      "no-shadow": "error",
      "no-implicit-coercion": "error",
      "no-unused-vars": ["error", { args: "all", argsIgnorePattern: "^_" }],
      "prefer-const": "error",
      "no-var": "error",
    },
  },
];
