// The authenticated HTTP API: the token lives in this tab's
// sessionStorage and travels in the Authorization header.

export const TOKEN_KEY = "governor.token";

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  /** Called when the server says the session ended. */
  ended: () => {},
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && session.me) session.ended("Your session ended: sign in again.");
    throw new ApiError(response.status, body || {});
  }
  return body;
}

/** Whether the signed-in person has `permission`. */
export const may = (permission) => Boolean(session.me && session.me.permissions.includes(permission));
