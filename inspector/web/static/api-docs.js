// The API's /docs page: Swagger UI over /openapi.json (a file, not inline: the CSP allows no inline script).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
