<?php echo "blog";
