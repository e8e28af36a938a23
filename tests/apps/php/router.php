<?php
// A front controller, as WordPress, Laravel or MediaWiki have: routes on REQUEST_URI and prints
// what the server gave it, so the rewrite tests can check the CGI contract.
header('Content-Type: application/json');
$uri = $_SERVER['REQUEST_URI'];
if (strncmp($uri, '/missing', 8) === 0) {
    http_response_code(404);
    echo json_encode(['error' => 'no such page: ' . $uri]), "\n";
    exit;
}
$keys = ['REQUEST_URI', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'QUERY_STRING', 'PATH_INFO', 'DOCUMENT_URI', 'REQUEST_METHOD'];
$out = [];
foreach ($keys as $k) {
    $out[$k] = isset($_SERVER[$k]) ? $_SERVER[$k] : null;
}
$out['GET'] = $_GET;
$out['router'] = basename(__DIR__) . '/' . basename(__FILE__);
echo json_encode($out), "\n";
