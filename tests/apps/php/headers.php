<?php
// Response headers set from PHP: X-Test: yes, a cookie, and the status from ?code=NNN.
header('X-Test: yes');
setcookie('h2pool_test', 'cookie-value', ['path' => '/', 'httponly' => true]);
if (isset($_GET['code'])) {
    http_response_code((int)$_GET['code']);
}
header('Content-Type: text/plain');
echo "status=", http_response_code(), "\n";
