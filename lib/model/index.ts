export * from "./result";
export * from "./service";
