<?php
// Echoes the request body twice, raw (php://input) and as PHP parsed it ($_POST), as JSON:
//     {"method": "POST", "content_type": "...", "input_length": N, "input": "...", "post": {...}}
// Bytes that are not UTF-8 appear as U+FFFD in "input"; input_length counts the raw bytes.
header('Content-Type: application/json');
$input = file_get_contents('php://input');
echo json_encode([
    'method' => $_SERVER['REQUEST_METHOD'] ?? '',
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? '',
    'input_length' => strlen($input),
    'input' => $input,
    'post' => (object)$_POST,
], JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
