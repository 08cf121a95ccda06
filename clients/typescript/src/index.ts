export * from "./accuracy";
export * from "./documents";
export * from "./kube";
export * from "./monitor";
export * from "./readers";
export * from "./route";
export * from "./signing";
